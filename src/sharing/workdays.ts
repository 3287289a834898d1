/**
 * Working days for decision deadlines: Monday to Friday, less listed public holidays, plus listed
 * make-up working days on weekends (调休). Dates are counted in China Standard Time (UTC+8, no DST).
 */
export interface WorkingCalendar {
  holidays: ReadonlySet<string>;
  makeupDays: ReadonlySet<string>;
}

const CST_OFFSET_MS = 8 * 3600_000;

export function calendarFrom(holidays: string, makeupDays: string): WorkingCalendar {
  const list = (value: string) => new Set(value.split(',').map((day) => day.trim()).filter(Boolean));
  return { holidays: list(holidays), makeupDays: list(makeupDays) };
}

function isWorkingDay(localDate: Date, calendar: WorkingCalendar): boolean {
  const day = localDate.toISOString().slice(0, 10);
  if (calendar.makeupDays.has(day)) return true;
  if (calendar.holidays.has(day)) return false;
  const weekday = localDate.getUTCDay();
  return weekday !== 0 && weekday !== 6;
}

/** The moment `days` working days after `from`, at the same time of day. */
export function addWorkingDays(from: Date, days: number, calendar: WorkingCalendar): Date {
  const local = new Date(from.getTime() + CST_OFFSET_MS);
  let counted = 0;
  while (counted < days) {
    local.setUTCDate(local.getUTCDate() + 1);
    if (isWorkingDay(local, calendar)) counted += 1;
  }
  return new Date(local.getTime() - CST_OFFSET_MS);
}
