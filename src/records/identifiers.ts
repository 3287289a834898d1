/**
 * The national identifier standards the catalog's item formats name, checked before any lookup.
 */

const RESIDENT_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_ID_CHECK = '10X98765432';

/** GB 11643-1999: 6-digit region, 8-digit birth date, 3-digit sequence, ISO 7064 MOD 11-2 check. */
export function residentIdCheckChar(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(first17[i]) * (RESIDENT_ID_WEIGHTS[i] as number);
  return RESIDENT_ID_CHECK[sum % 11] as string;
}

export function residentIdProblem(value: string): string | undefined {
  if (!/^\d{17}[\dX]$/.test(value)) return 'must be 17 digits and a check character (0-9 or X)';
  const year = Number(value.slice(6, 10));
  const month = Number(value.slice(10, 12));
  const day = Number(value.slice(12, 14));
  const birth = new Date(Date.UTC(year, month - 1, day));
  if (year < 1900 || birth.getUTCMonth() !== month - 1 || birth.getUTCDate() !== day || birth.getTime() > Date.now()) {
    return 'has no valid birth date';
  }
  if (residentIdCheckChar(value.slice(0, 17)) !== value[17]) return 'has a wrong check character (GB 11643)';
  return undefined;
}

const USCC_ALPHABET = '0123456789ABCDEFGHJKLMNPQRTUWXY';
const USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/** GB 32100-2015: 17 characters of the code alphabet and a MOD 31 check character. */
export function usccCheckChar(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += USCC_ALPHABET.indexOf(first17[i] as string) * (USCC_WEIGHTS[i] as number);
  return USCC_ALPHABET[(31 - (sum % 31)) % 31] as string;
}

export function usccProblem(value: string): string | undefined {
  if (!/^[0-9A-HJ-NPQRTUWXY]{18}$/.test(value)) return 'must be 18 characters of 0-9 and A-Y without I, O, S, V, Z';
  if (!/^\d{6}$/.test(value.slice(2, 8))) return 'has no division code at positions 3-8';
  if (usccCheckChar(value.slice(0, 17)) !== value[17]) return 'has a wrong check character (GB 32100)';
  return undefined;
}

/** GB/T 2260 and the statistics bureau's codes: province 2, city 4, county 6, town 9, village 12 digits. */
export function divisionCodeProblem(value: string): string | undefined {
  return /^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})$/.test(value) ? undefined : 'must be a division code of 2, 4, 6, 9 or 12 digits';
}

export function formatProblem(format: string | undefined, value: string): string | undefined {
  switch (format) {
    case 'cn-resident-id':
      return residentIdProblem(value);
    case 'cn-uscc':
      return usccProblem(value);
    case 'cn-division-code':
      return divisionCodeProblem(value);
    case 'wgs84-longitude': {
      const n = Number(value);
      return Number.isFinite(n) && n >= -180 && n <= 180 ? undefined : 'must be a longitude between -180 and 180';
    }
    case 'wgs84-latitude': {
      const n = Number(value);
      return Number.isFinite(n) && n >= -90 && n <= 90 ? undefined : 'must be a latitude between -90 and 90';
    }
    case 'email':
      return /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value) ? undefined : 'must be an email address';
    case 'phone':
      return /^[0-9+\-() ]{5,20}$/.test(value) ? undefined : 'must be a phone number';
    default:
      return undefined;
  }
}
