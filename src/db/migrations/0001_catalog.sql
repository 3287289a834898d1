-- pg_trgm backs the catalog search index (PGlite ships it as a contrib extension).
CREATE EXTENSION IF NOT EXISTS pg_trgm;--> statement-breakpoint
CREATE TABLE "agencies" (
	"code" text PRIMARY KEY NOT NULL,
	"abbr" text NOT NULL,
	"name" text NOT NULL,
	"name_en" text NOT NULL,
	"level" text NOT NULL,
	"region" text NOT NULL,
	"document" jsonb NOT NULL,
	"content_hash" text NOT NULL,
	"version" integer DEFAULT 1 NOT NULL,
	"retired_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "catalog_history" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"sync_id" bigint NOT NULL,
	"kind" text NOT NULL,
	"code" text NOT NULL,
	"version" integer NOT NULL,
	"change" text NOT NULL,
	"fields" text[] NOT NULL,
	"changed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "catalog_syncs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"content_hash" text NOT NULL,
	"created" integer NOT NULL,
	"updated" integer NOT NULL,
	"retired" integer NOT NULL,
	"unchanged" integer NOT NULL,
	"synced_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "resources" (
	"code" text PRIMARY KEY NOT NULL,
	"provider" text NOT NULL,
	"name" text NOT NULL,
	"title" text NOT NULL,
	"theme" text NOT NULL,
	"sharing" text NOT NULL,
	"open" text NOT NULL,
	"keywords" text[] NOT NULL,
	"published" date NOT NULL,
	"search_text" text NOT NULL,
	"document" jsonb NOT NULL,
	"content_hash" text NOT NULL,
	"version" integer DEFAULT 1 NOT NULL,
	"retired_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "catalog_history" ADD CONSTRAINT "catalog_history_sync_id_catalog_syncs_id_fk" FOREIGN KEY ("sync_id") REFERENCES "public"."catalog_syncs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "resources" ADD CONSTRAINT "resources_provider_agencies_code_fk" FOREIGN KEY ("provider") REFERENCES "public"."agencies"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "catalog_history_code" ON "catalog_history" USING btree ("kind","code","id");--> statement-breakpoint
CREATE INDEX "resources_search_trgm" ON "resources" USING gin ("search_text" gin_trgm_ops);--> statement-breakpoint
CREATE INDEX "resources_provider" ON "resources" USING btree ("provider");--> statement-breakpoint
CREATE INDEX "resources_theme" ON "resources" USING btree ("theme");--> statement-breakpoint
CREATE INDEX "resources_open" ON "resources" USING btree ("open");