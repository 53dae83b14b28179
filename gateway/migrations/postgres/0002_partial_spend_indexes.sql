-- Spend rows of keys without a team or user (the common case for service keys) no longer
-- enter the team and user indexes: the rows only ever looked up by `team_id = ?` or
-- `user_id = ?` are the non-null ones, and a NULL entry costs an index insert on every
-- request's row. Both engines use a partial index for an equality filter on its column.
DROP INDEX spend_logs_team_idx;
DROP INDEX spend_logs_user_idx;
CREATE INDEX spend_logs_team_idx ON spend_logs (team_id, start_time) WHERE team_id IS NOT NULL;
CREATE INDEX spend_logs_user_idx ON spend_logs (user_id, start_time) WHERE user_id IS NOT NULL;
