#!/usr/bin/env node
// Committed entry point, so that `npm ci` can link `splinter` before the first build.
import '../dist/main.js';
