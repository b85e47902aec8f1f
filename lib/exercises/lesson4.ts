// Lesson 4's exercises (notebooks/04-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
import type { Exercise } from './check';

/** Lesson 4's exercises, in the order the notebook poses them. */
export const lesson4Exercises: Exercise[] = [];
