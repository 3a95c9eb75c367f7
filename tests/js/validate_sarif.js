#!/usr/bin/env node
// Validates a SARIF log against the official SARIF 2.1.0 JSON schema (draft 2020-12) with Ajv.
//
//   node tests/js/validate_sarif.js SCHEMA FILE
//
// Exit status: 0 valid, 1 invalid (each error on stderr: instance path, message, parameters),
// 2 usage or unreadable input. Ajv and ajv-formats come from tests/js/node_modules
// (`npm ci` in tests/js); `strict: false` because the schema carries keywords and formats Ajv's
// strict mode rejects, `allErrors` to report every problem at once.
'use strict';

const fs = require('fs');

function load(what, path) {
  try {
    return JSON.parse(fs.readFileSync(path, 'utf8'));
  } catch (e) {
    console.error(`validate_sarif: cannot read the ${what} ${path}: ${e.message}`);
    process.exit(2);
  }
}

const [schemaPath, filePath] = process.argv.slice(2);
if (!schemaPath || !filePath) {
  console.error('usage: node validate_sarif.js SCHEMA FILE');
  process.exit(2);
}

let Ajv2020, addFormats;
try {
  Ajv2020 = require('ajv/dist/2020');
  addFormats = require('ajv-formats');
} catch (e) {
  console.error(`validate_sarif: ${e.message}\nhint: run \`npm ci\` in tests/js`);
  process.exit(2);
}

const schema = load('schema', schemaPath);
// The Errata 01 schema puts the region's `anyOf` (at least one of startLine, charOffset,
// byteOffset) inside `properties`, where it declares a property named "anyOf" and makes the
// schema itself invalid (oasis-tcs/sarif-spec#578). Apply it where it was meant to be: on the
// region object, so the constraint is enforced rather than dropped.
const region = schema.definitions && schema.definitions.region;
if (region && region.properties && Array.isArray(region.properties.anyOf)) {
  region.anyOf = region.properties.anyOf;
  delete region.properties.anyOf;
}
const log = load('SARIF file', filePath);
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const validate = ajv.compile(schema);
if (validate(log)) {
  console.log(`valid: ${filePath}`);
  process.exit(0);
}
for (const e of validate.errors) {
  console.error(`${e.instancePath || '/'}: ${e.message} ${JSON.stringify(e.params)}`);
}
console.error(`invalid: ${filePath}: ${validate.errors.length} error(s)`);
process.exit(1);
