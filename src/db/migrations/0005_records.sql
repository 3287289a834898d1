CREATE SCHEMA IF NOT EXISTS "records";--> statement-breakpoint
CREATE TABLE "record_migrations" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"resource" text NOT NULL,
	"version" integer NOT NULL,
	"statements" text[] NOT NULL,
	"applied_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "catalog_history" ALTER COLUMN "sync_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog_history" ADD COLUMN "detail" jsonb;