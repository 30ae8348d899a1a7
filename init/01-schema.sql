-- Rendered by tsaccess from examples/company.toml; do not edit by hand.
\set ON_ERROR_STOP on
BEGIN;
-- create extension timescaledb
CREATE EXTENSION IF NOT EXISTS timescaledb;
-- create schema public
CREATE SCHEMA IF NOT EXISTS "public";
-- create table sensor_readings
CREATE TABLE "public"."sensor_readings" ("time" timestamptz NOT NULL, "sensor_id" text NOT NULL, "temperature" numeric(5,2), "humidity" integer, "location" text, "department" text);
-- make sensor_readings a hypertable on time
SELECT create_hypertable('"public"."sensor_readings"'::regclass, by_range('time', INTERVAL '7 days'), migrate_data => true);
-- create table financial_metrics
CREATE TABLE "public"."financial_metrics" ("time" timestamptz NOT NULL, "metric_type" text NOT NULL, "amount" numeric(12,2), "currency" text DEFAULT 'USD', "department" text, "is_confidential" boolean DEFAULT true);
-- make financial_metrics a hypertable on time
SELECT create_hypertable('"public"."financial_metrics"'::regclass, by_range('time', INTERVAL '7 days'), migrate_data => true);
-- mark table sensor_readings as managed by tsaccess
COMMENT ON TABLE "public"."sensor_readings" IS 'tsaccess:managed';
-- mark table financial_metrics as managed by tsaccess
COMMENT ON TABLE "public"."financial_metrics" IS 'tsaccess:managed';
COMMIT;
