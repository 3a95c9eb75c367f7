'use strict';
// The Action's main step: find the guard binary and run `guard action main` (see lib.js).
require('./lib').run('main');
