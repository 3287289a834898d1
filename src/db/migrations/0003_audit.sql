CREATE TABLE "audit_chains" (
	"chain_id" text PRIMARY KEY NOT NULL,
	"instance" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "audit_checkpoints" (
	"chain_id" text NOT NULL,
	"seq" bigint NOT NULL,
	"head_hash" text NOT NULL,
	"signed_at" timestamp with time zone NOT NULL,
	"kid" text NOT NULL,
	"signature" text NOT NULL,
	CONSTRAINT "audit_checkpoints_chain_id_seq_pk" PRIMARY KEY("chain_id","seq")
);
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"id" text NOT NULL,
	"chain_id" text NOT NULL,
	"seq" bigint NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL,
	"occurred_at" timestamp with time zone NOT NULL,
	"request_id" text,
	"client_id" text,
	"agency" text,
	"on_behalf_of" text,
	"action" text NOT NULL,
	"resource" text,
	"provider" text,
	"purpose" text,
	"legal_basis" text,
	"grant_id" text,
	"subject_refs" text[],
	"fields" text[],
	"row_count" integer,
	"outcome" text NOT NULL,
	"status" integer,
	"reason" text,
	"latency_ms" double precision,
	"bytes" bigint,
	"client_address" text,
	CONSTRAINT "audit_events_chain_id_seq_occurred_at_pk" PRIMARY KEY("chain_id","seq","occurred_at")
) PARTITION BY RANGE ("occurred_at");
--> statement-breakpoint
-- Monthly partitions are made ahead by the gateway (audit_events_YYYY_MM); the default partition
-- catches anything outside them so that a write never fails for want of a partition.
CREATE TABLE "audit_events_default" PARTITION OF "audit_events" DEFAULT;
--> statement-breakpoint
CREATE TABLE "audit_exports" (
	"month" text PRIMARY KEY NOT NULL,
	"file" text NOT NULL,
	"sha256" text NOT NULL,
	"records" integer NOT NULL,
	"chain_heads" jsonb NOT NULL,
	"exported_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "audit_events_time" ON "audit_events" USING btree ("occurred_at");--> statement-breakpoint
CREATE INDEX "audit_events_agency_time" ON "audit_events" USING btree ("agency","occurred_at");--> statement-breakpoint
CREATE INDEX "audit_events_provider_time" ON "audit_events" USING btree ("provider","occurred_at");--> statement-breakpoint
CREATE INDEX "audit_events_subjects" ON "audit_events" USING gin ("subject_refs");--> statement-breakpoint
CREATE INDEX "audit_events_id" ON "audit_events" USING btree ("id");