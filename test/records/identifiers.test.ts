import t from 'tap';
import { enterprises, residents, students } from '../../src/demo/seed.js';
import {
  divisionCodeProblem,
  formatProblem,
  residentIdCheckChar,
  residentIdProblem,
  usccCheckChar,
  usccProblem,
} from '../../src/records/identifiers.js';

/**
 * Reference check characters written from the standards' formulas, not from the code under test:
 * GB 11643 (ISO 7064 MOD 11-2) weights are 2^(17-i) mod 11, GB 32100 weights are 3^i mod 31.
 */
function referenceResidentCheck(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(first17[i]) * (2 ** (17 - i) % 11);
  const check = (12 - (sum % 11)) % 11;
  return check === 10 ? 'X' : String(check);
}

const USCC_ALPHABET = '0123456789ABCDEFGHJKLMNPQRTUWXY';
function referenceUsccCheck(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += USCC_ALPHABET.indexOf(first17[i] as string) * (3 ** i % 31);
  return USCC_ALPHABET[(31 - (sum % 31)) % 31] as string;
}

/** A resident ID number with the right check character for a region, birth date and sequence. */
const residentId = (region: string, birth: string, sequence: string) => `${region}${birth}${sequence}${referenceResidentCheck(`${region}${birth}${sequence}`)}`;

/** Another check character than the right one. */
const otherCheck = (right: string, alphabet: string) => alphabet[(alphabet.indexOf(right) + 1) % alphabet.length] as string;

const WRONG_CHECK_ID = 'has a wrong check character (GB 11643)';
const NO_BIRTH_DATE = 'has no valid birth date';
const ID_SHAPE = 'must be 17 digits and a check character (0-9 or X)';

t.test('GB 11643 resident ID numbers', async (t) => {
  t.test('the standard\'s own example and numbers made by the formula are valid', async (t) => {
    t.equal(residentIdProblem('11010519491231002X'), undefined, 'GB 11643 example with check X');
    t.equal(residentIdCheckChar('11010519491231002'), 'X');
    for (const [region, birth, sequence] of [
      ['330106', '20000229', '123'], // a leap day
      ['330106', '19000101', '001'], // the earliest year accepted
      ['330382', '19991231', '998'],
      ['110105', '19800101', '000'],
    ] as const) {
      const id = residentId(region, birth, sequence);
      t.equal(residentIdProblem(id), undefined, `${id} is valid`);
      t.equal(residentIdCheckChar(id.slice(0, 17)), id[17], `${id}: the code computes the reference check character`);
    }
  });

  t.test('every check character the formula can give, 0-9 and X, is computed as the reference does', async (t) => {
    const seen = new Set<string>();
    for (let sequence = 0; sequence < 200 && seen.size < 11; sequence++) {
      const first17 = `33010619850612${String(sequence).padStart(3, '0')}`;
      const check = residentIdCheckChar(first17);
      t.equal(check, referenceResidentCheck(first17), first17);
      seen.add(check);
    }
    t.same([...seen].sort(), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'X'], 'all eleven check characters occur');
  });

  t.test('a wrong check character is refused', async (t) => {
    const right = residentId('330106', '19850612', '123');
    for (const wrong of '0123456789X'.replace(right[17] as string, '')) {
      t.equal(residentIdProblem(`${right.slice(0, 17)}${wrong}`), WRONG_CHECK_ID, `check ${wrong} instead of ${right[17]}`);
    }
    t.equal(residentIdProblem('11010519491231002' + '9'), WRONG_CHECK_ID);
  });

  t.test('a birth date that does not exist is refused, even with the right check character', async (t) => {
    t.equal(residentIdProblem(residentId('330106', '20010230', '123')), NO_BIRTH_DATE, 'Feb 30');
    t.equal(residentIdProblem(residentId('330106', '20010229', '123')), NO_BIRTH_DATE, 'Feb 29 of a common year');
    t.equal(residentIdProblem(residentId('330106', '19000229', '123')), NO_BIRTH_DATE, '1900 was not a leap year');
    t.equal(residentIdProblem(residentId('330106', '19850431', '123')), NO_BIRTH_DATE, 'Apr 31');
    t.equal(residentIdProblem(residentId('330106', '19851301', '123')), NO_BIRTH_DATE, 'month 13');
    t.equal(residentIdProblem(residentId('330106', '19850001', '123')), NO_BIRTH_DATE, 'month 00');
    t.equal(residentIdProblem(residentId('330106', '19850100', '123')), NO_BIRTH_DATE, 'day 00');
    t.equal(residentIdProblem(residentId('330106', '18991231', '123')), NO_BIRTH_DATE, 'before 1900');
  });

  t.test('a birth date in the future is refused', async (t) => {
    t.equal(residentIdProblem(residentId('330106', '29990101', '123')), NO_BIRTH_DATE, 'year 2999');
    const soon = new Date(Date.now() + 3 * 86_400_000).toISOString().slice(0, 10).replaceAll('-', '');
    t.equal(residentIdProblem(residentId('330106', soon, '123')), NO_BIRTH_DATE, `three days from now (${soon})`);
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10).replaceAll('-', '');
    t.equal(residentIdProblem(residentId('330106', yesterday, '123')), undefined, `yesterday (${yesterday}) is fine`);
  });

  t.test('lower-case x is refused: GB 11643 writes the check character as upper-case X', async (t) => {
    t.equal(residentIdProblem('11010519491231002X'), undefined);
    t.equal(residentIdProblem('11010519491231002x'), ID_SHAPE);
  });

  t.test('anything but 17 digits and a check character is refused', async (t) => {
    for (const value of ['', '11010519491231002', '11010519491231002X0', '1101051949123100X2', ' 11010519491231002X', '11010519491231002X ', '110105194912310O2X', '１１０１０５１９４９１２３１００２Ｘ', '15位旧号码110105491231002']) {
      t.equal(residentIdProblem(value), ID_SHAPE, JSON.stringify(value));
    }
  });
});

const USCC_SHAPE = 'must be 18 characters of 0-9 and A-Y without I, O, S, V, Z';
const WRONG_CHECK_USCC = 'has a wrong check character (GB 32100)';

t.test('GB 32100 unified social credit codes', async (t) => {
  const generated = [...enterprises(5)].map((enterprise) => enterprise.uscc);

  t.test('the generated enterprises\' codes and published examples are valid', async (t) => {
    t.equal(generated.length, 5);
    for (const code of [...generated, '91350100M000100Y43', '91110000600037341L']) {
      t.equal(usccProblem(code), undefined, code);
      t.equal(usccCheckChar(code.slice(0, 17)), referenceUsccCheck(code.slice(0, 17)), `${code}: the reference check character`);
      t.equal(code[17], referenceUsccCheck(code.slice(0, 17)));
    }
  });

  t.test('a wrong check character is refused', async (t) => {
    for (const code of generated) {
      const wrong = `${code.slice(0, 17)}${otherCheck(code[17] as string, USCC_ALPHABET)}`;
      t.equal(usccProblem(wrong), WRONG_CHECK_USCC, wrong);
    }
  });

  t.test('the letters I, O, S, V and Z are not in the code alphabet, wherever they stand', async (t) => {
    const [code] = generated as [string];
    for (const letter of ['I', 'O', 'S', 'V', 'Z']) {
      t.equal(usccProblem(`${code.slice(0, 10)}${letter}${code.slice(11)}`), USCC_SHAPE, `${letter} in the organisation code`);
      t.equal(usccProblem(`${code.slice(0, 17)}${letter}`), USCC_SHAPE, `${letter} as the check character`);
    }
  });

  t.test('lower case, wrong lengths and a non-numeric division part are refused', async (t) => {
    const [code] = generated as [string];
    t.equal(usccProblem('91350100m000100y43'), USCC_SHAPE, 'lower case letters');
    t.equal(usccProblem(code.slice(0, 17)), USCC_SHAPE, '17 characters');
    t.equal(usccProblem(`${code}0`), USCC_SHAPE, '19 characters');
    t.equal(usccProblem(''), USCC_SHAPE, 'empty');
    const letteredDivision = `91A30106${code.slice(8, 17)}`;
    t.equal(usccProblem(`${letteredDivision}${referenceUsccCheck(letteredDivision)}`), 'has no division code at positions 3-8');
  });
});

const DIVISION_SHAPE = 'must be a division code of 2, 4, 6, 9 or 12 digits';

t.test('division codes (GB/T 2260 and the statistics bureau\'s 12 digits)', async (t) => {
  for (const [code, level] of [
    ['33', 'province'],
    ['3301', 'city'],
    ['330106', 'county'],
    ['330106001', 'town'],
    ['330106001001', 'village'],
  ]) {
    t.equal(divisionCodeProblem(code as string), undefined, `${level}: ${code}`);
    t.equal(formatProblem('cn-division-code', code as string), undefined);
  }
  for (const code of ['', '3', '330', '33010', '3301060', '33010600', '3301060010', '33010600100', '3301060010010', '33010a', 'abcdef', ' 330106', '330106 ', '３３０１０６']) {
    t.equal(divisionCodeProblem(code), DIVISION_SHAPE, JSON.stringify(code));
  }
});

t.test('formatProblem names the standard of each identifier format and ignores other formats', async (t) => {
  t.equal(formatProblem('cn-resident-id', '11010519491231002X'), undefined);
  t.equal(formatProblem('cn-resident-id', '110105194912310029'), WRONG_CHECK_ID);
  t.equal(formatProblem('cn-uscc', '91350100M000100Y43'), undefined);
  t.equal(formatProblem('cn-uscc', '91350100M000100Y44'), WRONG_CHECK_USCC);
  t.equal(formatProblem('cn-division-code', '3301060'), DIVISION_SHAPE);
  t.equal(formatProblem(undefined, 'anything at all'), undefined);
  t.equal(formatProblem('no-such-format', 'anything at all'), undefined);
});

t.test('demo data', async (t) => {
  const people = [...residents(5000)];

  t.test('every resident has a valid ID whose birth date, region and gender agree with the record', async (t) => {
    t.equal(people.length, 5000);
    const wrong = people.filter((person) => {
      const id = person.id_number;
      const birth = `${id.slice(6, 10)}-${id.slice(10, 12)}-${id.slice(12, 14)}`;
      const gender = Number(id[16]) % 2 === 1 ? '1' : '2';
      return residentIdProblem(id) !== undefined || id[17] !== referenceResidentCheck(id.slice(0, 17)) || birth !== person.birth_date || id.slice(0, 6) !== person.region_code || gender !== person.gender;
    });
    t.same(wrong, [], 'no resident disagrees with their ID number');
    t.equal(new Set(people.map((person) => person.id_number)).size, people.length, 'ID numbers are unique');
    t.ok(people.every((person) => person.region_code.startsWith('33') && divisionCodeProblem(person.region_code) === undefined), 'all in Zhejiang, valid county codes');
  });

  t.test('students are drawn from residents: same ID number and name, student_id is G + ID number', async (t) => {
    const byId = new Map(people.map((person) => [person.id_number, person]));
    const pupils = [...students(residents(5000), 1500)];
    t.equal(pupils.length, 1500);
    const strangers = pupils.filter((pupil) => {
      const person = byId.get(pupil.id_number);
      return !person || person.name !== pupil.name || pupil.student_id !== `G${pupil.id_number}` || pupil.region_code !== person.region_code;
    });
    t.same(strangers, [], 'every student is a resident of the same name');
    t.equal(new Set(pupils.map((pupil) => pupil.student_id)).size, 1500, 'one student number each');
    t.ok(pupils.every((pupil) => pupil.student_id.length === 19), 'student numbers fit the catalog\'s max_length 19');
  });

  t.test('enterprises have valid codes registered in the county of their region code', async (t) => {
    const firms = [...enterprises(1000)];
    t.same(firms.filter((firm) => usccProblem(firm.uscc) !== undefined || firm.uscc.slice(2, 8) !== firm.region_code), []);
    t.equal(new Set(firms.map((firm) => firm.uscc)).size, 1000, 'codes are unique');
  });

  t.test('the generators are deterministic: two runs make the same data', async (t) => {
    t.same([...residents(300)], [...residents(300)]);
    t.same([...residents(300)], people.slice(0, 300), 'a shorter run is a prefix of a longer one');
    t.same([...students(residents(2000), 200)], [...students(residents(2000), 200)]);
    t.same([...enterprises(300)], [...enterprises(300)]);
    t.notSame([...residents(50, 1)], [...residents(50, 2)], 'another seed makes other people');
  });
});
