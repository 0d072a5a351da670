-- Failed logins on a single node (SPEC §2 throttle), kept so that a restart does not
-- lift a lockout before its window passes. (A cluster counts them in Redis instead.)
-- subject: 'account:<normalized email>' or 'ip:<address>'; token: the attempt, whose
-- rows are deleted if it succeeds; failed_at: Unix milliseconds.
CREATE TABLE login_failures (
    subject TEXT NOT NULL,
    token TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);
CREATE INDEX login_failures_failed_at ON login_failures (failed_at);
CREATE INDEX login_failures_token ON login_failures (token);
