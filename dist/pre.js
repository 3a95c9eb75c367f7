'use strict';
// The Action's pre step: find the guard binary and run `guard action pre` (see lib.js).
require('./lib').run('pre');
