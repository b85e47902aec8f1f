// Public API of inference-lab: re-exports only.

export * from './sampling';
