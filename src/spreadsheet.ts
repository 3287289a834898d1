const FORMULA_START = /^[-=+@\t\r]/;
const DECIMAL = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

/**
 * A text as a CSV for spreadsheets writes it: with a leading `'` when a spreadsheet would take it
 * for a formula (OWASP, CSV Injection), i.e. when its first character is `=`, `+`, `-`, `@`, a tab
 * or a CR. A text that is a whole decimal number (`-12.5`, `+86`, `-1e5`) stays as it is: a
 * spreadsheet reads it as that number, which runs nothing. For the CSVs people open in Excel: open
 * data with `bom=true`, the trail's and a citizen's downloads from their pages.
 */
export function spreadsheetText(value: string): string {
  return FORMULA_START.test(value) && !DECIMAL.test(value) ? `'${value}` : value;
}
