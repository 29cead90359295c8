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
