// Rebuilds data/corpus/ from Debian's King James Bible packages (public domain text).
//
//   npm run data:corpus            # needs apt-get (Debian/Ubuntu); no root needed
//
// Steps: download bible-kjv + bible-kjv-text (.deb) -> unpack into a temp folder -> dump every
// verse with the package's own `bible` program -> clean -> one document per chapter ->
// deterministic split by chapter index -> data/corpus/{train,validation,test}.txt + manifest.json.
// Documents are separated by the tokenizer's end-of-text marker on its own line.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const EOT = '<|endoftext|>';
const PACKAGES = ['bible-kjv', 'bible-kjv-text'];
const OUT_DIR = resolve(process.argv[2] ?? 'data/corpus');

// chapter i goes to validation when i % 20 == 7, to test when i % 20 == 13, else to train
function splitOf(chapterIndex: number): 'train' | 'validation' | 'test' {
  const r = chapterIndex % 20;
  return r === 7 ? 'validation' : r === 13 ? 'test' : 'train';
}

function dumpBible(): { text: string; versions: Record<string, string> } {
  const work = mkdtempSync(join(tmpdir(), 'kjv-'));
  try {
    execFileSync('apt-get', ['download', ...PACKAGES], { cwd: work, stdio: 'pipe' });
    const versions: Record<string, string> = {};
    for (const deb of readdirSync(work).filter((f) => f.endsWith('.deb'))) {
      execFileSync('dpkg', ['-x', deb, 'root'], { cwd: work });
      const [name, version] = deb.replace(/\.deb$/, '').split('_');
      versions[name] = version;
    }
    const root = join(work, 'root');
    const text = execFileSync(
      join(root, 'usr/bin/bible'),
      // -p: folder holding bible.data (an absolute -d path is not accepted); -l: no line wrapping
      ['-p', join(root, 'usr/lib'), '-l100000', 'Gen1:1-Rev22:21'],
      { encoding: 'utf8', maxBuffer: 64 << 20 },
    );
    return { text, versions };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Parses the `bible` dump into chapters: a heading ("Genesis 1") and its verses, numbers removed. */
export function parseChapters(dump: string): { heading: string; verses: string[] }[] {
  const chapters: { heading: string; verses: string[] }[] = [];
  for (const raw of dump.split('\n')) {
    const line = raw.trimEnd();
    if (line.trim() === '') continue;
    const verse = /^\s+(\d+) (.*)$/.exec(line);
    if (verse) {
      const current = chapters[chapters.length - 1];
      if (!current) throw new Error(`verse before any chapter heading: ${line}`);
      current.verses.push(verse[2].replace(/\s+/g, ' ').trim());
    } else {
      chapters.push({ heading: line.trim(), verses: [] });
    }
  }
  return chapters;
}

function main(): void {
  const { text, versions } = dumpBible();
  const chapters = parseChapters(text);
  if (chapters.length !== 1189) throw new Error(`expected 1189 chapters, got ${chapters.length}`);
  const docs: Record<string, string[]> = { train: [], validation: [], test: [] };
  chapters.forEach((c, i) => docs[splitOf(i)].push(`${c.heading}\n\n${c.verses.join('\n')}\n`));

  mkdirSync(OUT_DIR, { recursive: true });
  const manifest: Record<string, unknown> = {
    source: 'Debian packages ' + PACKAGES.join(', ') + ' (King James Version, 1611; public domain)',
    packages: versions,
    cleaning: 'verse numbers removed, whitespace collapsed, one verse per line, one chapter per document',
    separator: `${EOT} on its own line between documents`,
    split: 'chapter index i (0 = Genesis 1): i % 20 == 7 -> validation, i % 20 == 13 -> test, else train',
    splits: {},
  };
  for (const [split, list] of Object.entries(docs)) {
    const body = list.join(`${EOT}\n`);
    writeFileSync(join(OUT_DIR, `${split}.txt`), body);
    (manifest.splits as Record<string, unknown>)[split] = {
      file: `${split}.txt`,
      chapters: list.length,
      bytes: Buffer.byteLength(body),
      words: body.split(/\s+/).filter(Boolean).length,
      sha256: createHash('sha256').update(body).digest('hex'),
    };
  }
  writeFileSync(join(OUT_DIR, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  console.log(JSON.stringify(manifest.splits, null, 2));
}

main();
