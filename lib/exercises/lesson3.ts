// Lesson 3's exercises (notebooks/03-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
import type { Exercise } from './check';

/** Lesson 3's exercises, in the order the notebook poses them. */
export const lesson3Exercises: Exercise[] = [];
