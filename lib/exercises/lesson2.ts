// Lesson 2's exercises (notebooks/02-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
import type { Exercise } from './check';

/** Lesson 2's exercises, in the order the notebook poses them. */
export const lesson2Exercises: Exercise[] = [];
