// npm run kernels (and npm run build): compile the AssemblyScript CPU kernels and write
// lib/model/kernels/cpuKernels.generated.ts when it changed. See compile.ts.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import { ascVersion, compileKernels, GENERATED_FILE, generatedSource, KERNEL_BUILDS } from './compile';

const builds = KERNEL_BUILDS.map((b) => compileKernels(process.cwd(), b));
const bytes = builds[0];
const source = generatedSource(builds, ascVersion());
if (existsSync(GENERATED_FILE) && readFileSync(GENERATED_FILE, 'utf8') === source) {
  console.log(`${GENERATED_FILE}: up to date (${bytes.length} bytes of wasm)`);
} else {
  writeFileSync(GENERATED_FILE, source);
  console.log(`${GENERATED_FILE}: written (${bytes.length} bytes of wasm)`);
}
