import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CookiePolicy, type CookieOwner } from '../../src/cookies/policy.js';

describe('cookie policy: whose cookie is it', () => {
  const table: Array<{ managed: '*' | string[]; passthrough: string[]; name: string; owner: CookieOwner }> = [
    { managed: '*', passthrough: [], name: 'cc', owner: 'ticket' },
    { managed: '*', passthrough: [], name: 'sid', owner: 'jar' },
    { managed: '*', passthrough: ['_ga*'], name: '_ga', owner: 'client' },
    { managed: '*', passthrough: ['_ga*'], name: '_ga_XYZ', owner: 'client' },
    { managed: '*', passthrough: ['_ga*'], name: 'x_ga', owner: 'jar' },
    { managed: '*', passthrough: ['theme'], name: 'theme', owner: 'client' },
    { managed: '*', passthrough: ['theme'], name: 'themes', owner: 'jar' },
    { managed: ['sid'], passthrough: [], name: 'sid', owner: 'jar' },
    { managed: ['sid'], passthrough: [], name: 'other', owner: 'client' },
    { managed: ['sid'], passthrough: [], name: 'cc', owner: 'ticket' },
  ];
  for (const row of table) {
    test(`managed ${JSON.stringify(row.managed)}, passthrough ${JSON.stringify(row.passthrough)}: ${row.name} → ${row.owner}`, () => {
      const policy = new CookiePolicy({ ticketName: 'cc', managed: row.managed, passthrough: row.passthrough });
      assert.equal(policy.ownerOf(row.name), row.owner);
    });
  }

  test('app cookie names: the managed list from the start, then names the app sets, up to the bound', () => {
    const listed = new CookiePolicy({ ticketName: 'cc', managed: ['sid'], passthrough: [] });
    assert.equal(listed.isAppCookie('sid'), true);
    assert.equal(listed.isAppCookie('x'), false);
    const star = new CookiePolicy({ ticketName: 'cc', managed: '*', passthrough: [], maxAppNames: 2 });
    assert.equal(star.isAppCookie('a'), false);
    star.noteAppCookie('a');
    star.noteAppCookie('b');
    star.noteAppCookie('c');
    assert.deepEqual(['a', 'b', 'c'].map((n) => star.isAppCookie(n)), [true, true, false]);
  });
});
