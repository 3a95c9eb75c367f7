'use strict';
// The Action's post step: find the guard binary and run `guard action post` (see lib.js).
require('./lib').run('post');
