import type { Command } from 'commander';
import { and, desc, eq } from 'drizzle-orm';
import type { AuditInput } from '../audit/index.js';
import { CliError, type CliContext } from '../commands.js';
import { applications, grants } from '../db/schema.js';
import { decide, findApplication, type DecisionInput } from './applications.js';
import { GRANTS_CHANNEL } from './grants.js';
import { grantView } from './routes.js';

/** `gateway grant` and `gateway application`: the grants, and the operator's decisions on applications. */
export function sharingCommands(program: Command, cli: CliContext<AuditInput>): void {
  program
    .command('grant')
    .description('grants (授权): who may use which fields of which resource')
    .command('list')
    .description('list grants with their status')
    .option('--agency <code>', 'only grants to this agency')
    .option('--resource <code>', 'only grants on this resource')
    .option('--json', 'print JSON')
    .action(async (options: { agency?: string; resource?: string; json?: boolean }) => {
      await cli.withDatabase(async (database) => {
        const rows = await database.db
          .select()
          .from(grants)
          .where(and(options.agency ? eq(grants.agency, options.agency) : undefined, options.resource ? eq(grants.resource, options.resource) : undefined))
          .orderBy(desc(grants.validFrom));
        const views = rows.map((grant) => grantView(grant, new Date()));
        cli.list(views, options.json, (view) => `${view.id}\t${view.agency}\t${view.resource}\t${view.mode}\t${view.status}\t${view.valid_until}\t${view.fields.join(',')}`);
      });
    });

  applicationCommands(program.command('application').description('applications (共享申请) and their decisions'), cli);
}

function applicationCommands(application: Command, cli: CliContext<AuditInput>): void {
  application
    .command('list')
    .description('list applications, newest first')
    .option('--status <status>', 'pending, approved or rejected')
    .option('--provider <code>', 'only applications for this provider agency')
    .option('--json', 'print JSON')
    .action(async (options: { status?: string; provider?: string; json?: boolean }) => {
      await cli.withDatabase(async (database) => {
        const rows = await database.db
          .select()
          .from(applications)
          .where(and(options.status ? eq(applications.status, options.status) : undefined, options.provider ? eq(applications.provider, options.provider) : undefined))
          .orderBy(desc(applications.createdAt));
        cli.list(rows, options.json, (row) => `${row.id}\t${row.agency}\t${row.resource}\t${row.mode}\t${row.status}\tdue ${row.dueAt?.toISOString() ?? '-'}\t${row.fields.join(',')}`);
      });
    });

  application
    .command('approve')
    .argument('<id>')
    .description('approve a pending application as the operator, optionally narrowed')
    .option('--fields <list>', 'comma-separated subset of the fields applied for')
    .option('--days <n>', 'a shorter duration than applied for')
    .action(async (id: string, options: { fields?: string; days?: string }) => {
      await decideAsOperator(cli, id, {
        decision: 'approve',
        ...(options.fields ? { fields: options.fields.split(',').map((f) => f.trim()).filter(Boolean) } : {}),
        ...(options.days ? { duration_days: Number(options.days) } : {}),
      });
    });

  application
    .command('reject')
    .argument('<id>')
    .description('reject a pending application as the operator')
    .requiredOption('--reason <text>', 'why (shown to the applicant)')
    .action(async (id: string, options: { reason: string }) => {
      await decideAsOperator(cli, id, { decision: 'reject', reason: options.reason });
    });
}

/** The operator's decision, audited on the CLI's chain whether it is taken or refused. */
async function decideAsOperator(cli: CliContext<AuditInput>, id: string, input: DecisionInput): Promise<void> {
  await cli.withDatabase(async (database) => {
    const application = await findApplication(database.db, id);
    if (!application) throw new CliError(`no application ${id}`);
    await cli.withAudit(database, async (record) => {
      const act = { action: 'application.decide', resource: application.resource, provider: application.provider, reason: 'operator (gateway CLI)' };
      try {
        const decided = await decide(database.db, application, input, 'operator:cli', new Date());
        if (decided.grant) await database.notify(GRANTS_CHANNEL, decided.grant.id);
        await record({ ...act, outcome: 'allowed', grant_id: decided.grant?.id ?? null, fields: decided.grant?.fields ?? application.fields });
        cli.line(`${decided.application.status} ${id}${decided.grant ? ` → grant ${decided.grant.id} (${decided.grant.fields.join(',')}) until ${decided.grant.validUntil.toISOString()}` : ''}`);
      } catch (error) {
        await record({ ...act, outcome: 'denied', reason: (error as Error).message.slice(0, 200) });
        throw new CliError((error as Error).message);
      }
    });
  });
}
