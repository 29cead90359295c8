package togethersim

import "github.com/together-operator/together-operator/internal/together"

// AddStalledFineTune preloads a running job that never advances: the steady
// state a poller sees during a long training, used to measure what an idle
// cycle costs.
func (s *Server) AddStalledFineTune(ft together.FineTune) {
	ft.Status = together.FineTuneRunning
	if ft.ID == "" {
		s.mu.Lock()
		ft.ID = s.nextID("ft")
		s.mu.Unlock()
	}
	s.AddFineTune(ft)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fineTunes[ft.ID].outcome.Stall = true
}
