-- GET /api/v1/customers?includeDeleted=true pages by (key, id): with only
-- (key, deleted_us) every page sorted the ids of each key it read, and the
-- cursor's (key, id) > (?, ?) could not seek. The live list is served by
-- customers_live_key (a live key is unique).
CREATE INDEX customers_key_id ON customers (key, id);
