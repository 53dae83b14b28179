-- One row that counts committed admin changes. Every transaction that writes the audit log
-- adds one, and so does a budget reset that zeroed some spend; gateway instances that share
-- this database poll it to learn that their cached keys, runtime models and router settings
-- are out of date. The update takes the row's lock until commit, so the count never moves
-- ahead of a change that is not yet visible.
CREATE TABLE change_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO change_version (id, version) VALUES (1, 0);
