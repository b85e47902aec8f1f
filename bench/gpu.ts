// One bundle for the GPU machine, which only takes a few files: dispatches to a benchmark by name.
//
//   here:  bash ../shared/gpu/pack.sh bench/gpu.ts
//   there: bash .gpu/run.sh node .gpu/bundle/gpu.mjs oracle|core|serve|spec|spec-engine [that benchmark's flags]
// Each benchmark parses the remaining flags itself (--backend webgpu --out ...) and exits when done.
const NAMES = ['oracle', 'core', 'serve', 'spec', 'spec-engine', 'captured', 'peers'] as const;

async function dispatch(name: string): Promise<void> {
  process.argv.splice(2, 1); // the benchmark sees only its own flags
  switch (name) {
    case 'oracle': await import('./oracle.js'); break;
    case 'core': await import('./core.js'); break;
    case 'serve': await import('./serve.js'); break;
    case 'spec': await import('./spec.js'); break;
    case 'spec-engine': await import('./spec-engine.js'); break;
    case 'captured': await import('./captured.js'); break;
    case 'peers': await import('./peers.js'); break;
    default: throw new Error(`unknown benchmark '${name}' (known: ${NAMES.join(', ')})`);
  }
}

dispatch(process.argv[2] ?? '').catch((e) => {
  console.error(e);
  process.exit(1);
});
