-- The first admin's password was given on the command line or printed in a log: the console asks
-- for a new one before anything else.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;
