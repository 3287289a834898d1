-- IF NOT EXISTS: a database migrated by an earlier build of this migration (before
-- ended_sessions was added to it) takes it again whole.
CREATE TABLE IF NOT EXISTS "audit_hourly" (
	"hour" timestamp with time zone NOT NULL,
	"agency" text NOT NULL,
	"provider" text NOT NULL,
	"resource" text NOT NULL,
	"action" text NOT NULL,
	"outcome" text NOT NULL,
	"reason" text NOT NULL,
	"bucket" integer NOT NULL,
	"count" bigint NOT NULL,
	CONSTRAINT "audit_hourly_hour_agency_provider_resource_action_outcome_reason_bucket_pk" PRIMARY KEY("hour","agency","provider","resource","action","outcome","reason","bucket")
);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "audit_verifications" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"instance" text NOT NULL,
	"trigger" text NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"finished_at" timestamp with time zone,
	"chains" integer,
	"chains_valid" integer,
	"records" bigint,
	"problems" jsonb,
	"error" text
);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "ended_sessions" (
	"sid" text PRIMARY KEY NOT NULL,
	"ended_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_hourly_agency_hour" ON "audit_hourly" USING btree ("agency","hour");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_hourly_provider_hour" ON "audit_hourly" USING btree ("provider","hour");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_verifications_started" ON "audit_verifications" USING btree ("started_at");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "ended_sessions_expires" ON "ended_sessions" USING btree ("expires_at");--> statement-breakpoint
-- The records written before this migration, counted by hour (the writer counts every later
-- batch in its own insert). The same statement as hourlyRollup('audit_events', 'keep') in
-- src/audit/rollup.ts, whose CASE is the bucket of LATENCY_BUCKETS_MS (test/audit/rollup.test.ts).
insert into audit_hourly (hour, agency, provider, resource, action, outcome, reason, bucket, count)
select date_trunc('hour', occurred_at, 'UTC'), coalesce(agency, ''), coalesce(provider, ''), coalesce(resource, ''),
       action, outcome, coalesce(reason, ''),
       case when latency_ms is null then -1
            when latency_ms <= 1 then 0 when latency_ms <= 2 then 1 when latency_ms <= 3 then 2 when latency_ms <= 5 then 3
            when latency_ms <= 7.5 then 4 when latency_ms <= 10 then 5 when latency_ms <= 15 then 6 when latency_ms <= 20 then 7
            when latency_ms <= 30 then 8 when latency_ms <= 50 then 9 when latency_ms <= 75 then 10 when latency_ms <= 100 then 11
            when latency_ms <= 150 then 12 when latency_ms <= 200 then 13 when latency_ms <= 300 then 14 when latency_ms <= 500 then 15
            when latency_ms <= 750 then 16 when latency_ms <= 1000 then 17 when latency_ms <= 2000 then 18 when latency_ms <= 5000 then 19
            when latency_ms <= 10000 then 20 when latency_ms <= 30000 then 21 else 22 end,
       count(*) from audit_events
group by 1, 2, 3, 4, 5, 6, 7, 8 order by 1, 2, 3, 4, 5, 6, 7, 8
on conflict (hour, agency, provider, resource, action, outcome, reason, bucket) do nothing;
