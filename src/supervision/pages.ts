import type { PagesPlugin } from './context.js';

/** Every part of the people's pages, in the order they are registered. */
export const SUPERVISION_PAGES: PagesPlugin[] = [];
