-- A job's source as bytes: Lua source may hold any byte (a NUL in a comment or a string is
-- valid Lua), and PostgreSQL's text refuses NUL. The worker decodes it as the UTF-8 it was.
ALTER TABLE jobs ALTER COLUMN code TYPE BYTEA USING convert_to(code, 'UTF8');
