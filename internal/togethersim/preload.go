/*
Copyright 2026 The together-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package togethersim

// AddStalledFineTune preloads a running job that never advances: the steady
// state a poller sees during a long training, used to measure what an idle
// cycle costs. It returns the job's ID.
func (s *Server) AddStalledFineTune(ft FineTune) string {
	ft.Status = ftRunning
	id := s.AddFineTune(ft)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fineTunes[id].outcome.Stall = true
	return id
}
