import type { PagesPlugin } from './context.js';
import { dashboardPages } from './dashboard.js';
import { citizenPages } from './me.js';
import { sharingPages } from './sharing-pages.js';
import { trailPages } from './trail-pages.js';

/** Every part of the people's pages, in the order they are registered. */
export const SUPERVISION_PAGES: PagesPlugin[] = [dashboardPages, sharingPages, trailPages, citizenPages];
