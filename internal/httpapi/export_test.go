package httpapi

import "maps"

// InFlight is what the server counts in flight beyond the global cap:
// requests per credential id and per client address, and authenticated
// requests of credentials other than admin ones. Tests wait on it for
// slow requests to be admitted.
func (s *Server) InFlight() (byCred, byAddr map[string]int, tenants int) {
	l := s.limits
	l.inFlight.Lock()
	defer l.inFlight.Unlock()
	byAddr = map[string]int{}
	for a, n := range l.byAddr {
		byAddr[a.String()] = n
	}
	return maps.Clone(l.byCred), byAddr, l.tenants
}
