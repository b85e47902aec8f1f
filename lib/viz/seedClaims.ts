/**
 * The tutorial the course mirrors, and its claims, verbatim: one data file
 * (data/seed-claims.json) that names the source once; lessons quote from it beside their
 * measurements, never from their own prose.
 *
 * Lesson: every lesson that checks a claim (1-6).
 */
import * as fs from 'node:fs';

import { dataPath } from './lessons';

/** One claim of the tutorial, quoted verbatim. */
export interface SeedClaim {
  id: string;
  /** the tutorial's words, verbatim */
  text: string;
  /** where in the tutorial it appears */
  where: string;
  /** the lessons that check it */
  lessons: number[];
  /** how a lesson checks it: measured, computed, modeled, or quoted only */
  check: string;
  /** numbers of a table row, where the claim is one */
  value?: Record<string, number>;
}

/** The tutorial: its title and a one-line description (named once, here). */
export interface SeedSource {
  title: string;
  description: string;
  /** what the lessons call it */
  shortName: string;
  note: string;
}

export interface SeedClaims {
  source: SeedSource;
  claims: SeedClaim[];
}

let cached: SeedClaims | null = null;

/** All the tutorial's claims and its source (data/seed-claims.json). */
export function seedClaims(): SeedClaims {
  if (!cached) cached = JSON.parse(fs.readFileSync(dataPath('seed-claims.json'), 'utf8')) as SeedClaims;
  return cached;
}

/** One claim by id; throws with the known ids when it is not there. */
export function seedClaim(id: string): SeedClaim {
  const c = seedClaims().claims.find((x) => x.id === id);
  if (!c) throw new Error(`no seed claim '${id}' (known: ${seedClaims().claims.map((x) => x.id).join(', ')})`);
  return c;
}

/** A claim as a markdown quote with its place: > "text" (the tutorial, where). */
export function quoteClaim(id: string): string {
  const c = seedClaim(id);
  return `> “${c.text}” — ${seedClaims().source.shortName}, ${c.where}`;
}

/** Claims as table rows (id, claim, where, how checked), for the lessons given or all. */
export function seedClaimRows(lessons?: number[]): { claim: string; where: string; 'how we check it': string }[] {
  return seedClaims()
    .claims.filter((c) => !lessons || c.lessons.some((l) => lessons.includes(l)))
    .map((c) => ({ claim: `“${c.text}”`, where: c.where, 'how we check it': c.check }));
}
