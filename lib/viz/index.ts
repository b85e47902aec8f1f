// lib/viz: charts and notebook display for the lessons (re-exports only).
export * from './figures';
export * from './html';
export * from './display';
export * from './serving';
