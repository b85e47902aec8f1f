// Lesson 4's exercises (notebooks/04-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
import type { Exercise } from './check';

/** Lesson 4's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson4 = {};

/** Lesson 4's exercises, in the order the notebook poses them. */
export const lesson4Exercises: Exercise[] = Object.values(lesson4);
