/**
 * The credentials of an Authorization header in the given scheme, or undefined when the header
 * is absent or names another scheme. The scheme is matched without regard to case and may be
 * followed by more than one space (RFC 9110 §11.1, §11.4): `bearer abc` is `Bearer abc`.
 */
export function credentialsIn(header: string | undefined, scheme: 'Basic' | 'Bearer'): string | undefined {
  if (header === undefined) return undefined;
  const match = /^([A-Za-z]+) +(\S*) *$/.exec(header);
  if (!match || (match[1] as string).toLowerCase() !== scheme.toLowerCase()) return undefined;
  return match[2] as string;
}
