-- GET /api/v1/reports?state=failed (and the other states) reads only the
-- reports in that state, in listing order.
CREATE INDEX reports_state ON reports (state, hour_us, id);
