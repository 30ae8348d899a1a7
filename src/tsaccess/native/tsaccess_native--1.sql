-- tsaccess_native has no SQL objects of its own: tsaccess apply creates the trigger functions
-- (LANGUAGE c AS 'tsaccess_native') in the policy's schemas, owned by the policy's owners.
\echo Use tsaccess apply, not CREATE EXTENSION, to use tsaccess_native. \quit
