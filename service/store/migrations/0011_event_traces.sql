-- Distributed tracing (service/tracing.py): the W3C traceparent of the write that recorded the event (the SCIM
-- request's trace), published with it as the CloudEvents `traceparent` attribute and Kafka header. NULL: the
-- write was not traced and its request carried no traceparent. Nullable without a default: no table rewrite.
ALTER TABLE events ADD COLUMN traceparent text;
