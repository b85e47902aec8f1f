// Lesson 1's exercises (notebooks/01-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
import type { Exercise } from './check';

/** Lesson 1's exercises, in the order the notebook poses them. */
export const lesson1Exercises: Exercise[] = [];
