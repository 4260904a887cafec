package loadgen

import (
	"io"
	"net/http"
)

// NullHandler answers POST EventsPath by reading and discarding the whole
// body and replying 204; every other path is 404 (405 for other methods on
// EventsPath). It stands in for tally to measure the ceiling of HTTP plus
// the load generator on a machine.
func NullHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+EventsPath, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
