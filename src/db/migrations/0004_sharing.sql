CREATE TABLE "applications" (
	"id" text PRIMARY KEY NOT NULL,
	"agency" text NOT NULL,
	"client_id" text,
	"resource" text NOT NULL,
	"provider" text NOT NULL,
	"fields" text[] NOT NULL,
	"mode" text NOT NULL,
	"purpose" text NOT NULL,
	"legal_basis" text NOT NULL,
	"duration_days" integer NOT NULL,
	"status" text NOT NULL,
	"due_at" timestamp with time zone,
	"created_at" timestamp with time zone NOT NULL,
	"decided_at" timestamp with time zone,
	"decided_by" text,
	"reason" text,
	"grant_id" text
);
--> statement-breakpoint
CREATE TABLE "grants" (
	"id" text PRIMARY KEY NOT NULL,
	"agency" text NOT NULL,
	"client_id" text,
	"resource" text NOT NULL,
	"provider" text NOT NULL,
	"fields" text[] NOT NULL,
	"mode" text NOT NULL,
	"purpose" text NOT NULL,
	"legal_basis" text NOT NULL,
	"application_id" text NOT NULL,
	"valid_from" timestamp with time zone NOT NULL,
	"valid_until" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"revoked_by" text
);
--> statement-breakpoint
ALTER TABLE "applications" ADD CONSTRAINT "applications_agency_agencies_code_fk" FOREIGN KEY ("agency") REFERENCES "public"."agencies"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "applications" ADD CONSTRAINT "applications_resource_resources_code_fk" FOREIGN KEY ("resource") REFERENCES "public"."resources"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_agency_agencies_code_fk" FOREIGN KEY ("agency") REFERENCES "public"."agencies"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_resource_resources_code_fk" FOREIGN KEY ("resource") REFERENCES "public"."resources"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "applications_agency" ON "applications" USING btree ("agency","created_at");--> statement-breakpoint
CREATE INDEX "applications_provider_status" ON "applications" USING btree ("provider","status","due_at");--> statement-breakpoint
CREATE INDEX "grants_agency_resource" ON "grants" USING btree ("agency","resource");--> statement-breakpoint
CREATE INDEX "grants_provider" ON "grants" USING btree ("provider");