CREATE TABLE "open_terms_acceptances" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"resource" text NOT NULL,
	"terms_sha256" text NOT NULL,
	"agency" text NOT NULL,
	"client_id" text NOT NULL,
	"purpose" text NOT NULL,
	"request_id" text NOT NULL,
	"accepted_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "open_terms_acceptances" ADD CONSTRAINT "open_terms_acceptances_resource_resources_code_fk" FOREIGN KEY ("resource") REFERENCES "public"."resources"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "open_terms_acceptances" ADD CONSTRAINT "open_terms_acceptances_agency_agencies_code_fk" FOREIGN KEY ("agency") REFERENCES "public"."agencies"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "open_terms_resource_agency" ON "open_terms_acceptances" USING btree ("resource","agency","terms_sha256");