CREATE TABLE "audit_hourly" (
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
CREATE TABLE "audit_verifications" (
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
CREATE INDEX "audit_hourly_agency_hour" ON "audit_hourly" USING btree ("agency","hour");--> statement-breakpoint
CREATE INDEX "audit_hourly_provider_hour" ON "audit_hourly" USING btree ("provider","hour");--> statement-breakpoint
CREATE INDEX "audit_verifications_started" ON "audit_verifications" USING btree ("started_at");