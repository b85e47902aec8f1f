// Lesson 6's exercises (notebooks/06-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
import type { Exercise } from './check';

/** Lesson 6's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson6 = {};

/** Lesson 6's exercises, in the order the notebook poses them. */
export const lesson6Exercises: Exercise[] = Object.values(lesson6);
