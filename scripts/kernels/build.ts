// npm run kernels (and npm run build): compile the AssemblyScript CPU kernels and write
// lib/model/kernels/cpuKernels.generated.ts when it changed. See compile.ts.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import { ascVersion, compileKernels, GENERATED_FILE, generatedSource } from './compile';

const bytes = compileKernels();
const source = generatedSource(bytes, compileKernels(process.cwd(), true), ascVersion());
if (existsSync(GENERATED_FILE) && readFileSync(GENERATED_FILE, 'utf8') === source) {
  console.log(`${GENERATED_FILE}: up to date (${bytes.length} bytes of wasm)`);
} else {
  writeFileSync(GENERATED_FILE, source);
  console.log(`${GENERATED_FILE}: written (${bytes.length} bytes of wasm)`);
}
