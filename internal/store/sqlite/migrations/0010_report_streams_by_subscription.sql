-- Planning for late events reads only the streams of the subscriptions
-- concerned.
CREATE INDEX report_streams_subscription ON report_streams (subscription_id);
