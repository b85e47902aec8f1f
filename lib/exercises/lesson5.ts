// Lesson 5's exercises (notebooks/05-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
import type { Exercise } from './check';

/** Lesson 5's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson5 = {};

/** Lesson 5's exercises, in the order the notebook poses them. */
export const lesson5Exercises: Exercise[] = Object.values(lesson5);
