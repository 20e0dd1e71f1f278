#!/usr/bin/env node
// Adds up the two suites' reports (pytest JUnit XML, vitest JSON) into one closing line,
// "tests: N passed, N failed, N skipped", so one line states the whole result.
import {readFileSync} from 'node:fs'

const [pytestXml, vitestJson] = process.argv.slice(2)
const totals = {passed: 0, failed: 0, skipped: 0}

const xml = readFileSync(pytestXml, 'utf8')
const suite = /<testsuite\b[^>]*>/.exec(xml)?.[0] ?? ''
const attr = (name) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite)?.[1] ?? 0)
const pyFailed = attr('failures') + attr('errors')
totals.failed += pyFailed
totals.skipped += attr('skipped')
totals.passed += attr('tests') - pyFailed - attr('skipped')

const vitest = JSON.parse(readFileSync(vitestJson, 'utf8'))
totals.passed += vitest.numPassedTests
totals.failed += vitest.numFailedTests + (vitest.numTotalTestSuites > 0 && !vitest.success && vitest.numFailedTests === 0 ? 1 : 0)
totals.skipped += vitest.numPendingTests + vitest.numTodoTests

console.log(`tests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`)
process.exit(totals.failed > 0 || totals.passed === 0 ? 1 : 0)
