import { readFileSync } from 'node:fs';
import t from 'tap';
import { CodecError, SchemaError } from '../../src/ovsdb/errors.js';
import { getColumn, getTable, parseSchema } from '../../src/ovsdb/schema.js';
import type { DatabaseSchema } from '../../src/ovsdb/types.js';

const load = (path: string): DatabaseSchema => parseSchema(JSON.parse(readFileSync(path, 'utf8')) as unknown);

/** `ovsdb-client get-schema unix:… _Server` from ovsdb-server 3.1.0, verbatim. */
const SERVER_SCHEMA = {
  cksum: '3009684573 744',
  name: '_Server',
  tables: {
    Database: {
      columns: {
        cid: { type: { key: 'uuid', min: 0 } },
        connected: { type: 'boolean' },
        index: { type: { key: 'integer', min: 0 } },
        leader: { type: 'boolean' },
        model: { type: { key: { enum: ['set', ['clustered', 'relay', 'standalone']], type: 'string' } } },
        name: { type: 'string' },
        schema: { type: { key: 'string', min: 0 } },
        sid: { type: { key: 'uuid', min: 0 } },
      },
    },
  },
  version: '1.2.0',
};

/** A small valid schema; error tests break one thing in a copy of it. */
function base(): Record<string, unknown> {
  return {
    name: 'Test',
    version: '1.0.0',
    tables: {
      Parent: {
        isRoot: true,
        columns: {
          name: { type: 'string' },
          kids: { type: { key: { type: 'uuid', refTable: 'Kid' }, min: 0, max: 'unlimited' } },
        },
      },
      Kid: { columns: { n: { type: 'integer' } } },
    },
  };
}

/** Replace the JSON at `path` inside a copy of base(). */
function broken(path: string[], value: unknown): unknown {
  const root = base();
  let o = root;
  for (const k of path.slice(0, -1)) {
    o[k] ??= {};
    o = o[k] as Record<string, unknown>;
  }
  const last = path[path.length - 1] as string;
  if (value === undefined) delete o[last];
  else o[last] = value;
  return root;
}

t.test('OVN Northbound schema from /usr/share', async (t) => {
  const nb = load('/usr/share/ovn/ovn-nb.ovsschema');
  t.equal(nb.name, 'OVN_Northbound');
  t.match(nb.version, /^\d+\.\d+\.\d+$/);
  t.type(nb.cksum, 'string');

  const lsp = getTable(nb, 'Logical_Switch_Port');
  t.equal(lsp.isRoot, false, 'LSP is not root: it must be referenced from a switch');
  t.same(lsp.indexes, [['name']]);
  t.same(getColumn(lsp, 'up').type, { key: { type: 'boolean' }, min: 0, max: 1 });
  t.same(getColumn(lsp, 'tag_request').type, {
    key: { type: 'integer', minInteger: 0, maxInteger: 4095 },
    min: 0,
    max: 1,
  });
  t.same(getColumn(lsp, 'options').type, { key: { type: 'string' }, value: { type: 'string' }, min: 0, max: Infinity });
  t.equal(getColumn(lsp, 'name').mutable, true);
  t.equal(getColumn(lsp, 'name').ephemeral, false);
  t.equal(getColumn(lsp, 'dhcpv4_options').type.key.refType, 'weak');

  const ls = getTable(nb, 'Logical_Switch');
  t.equal(ls.isRoot, true);
  t.same(ls.indexes, [], 'Logical_Switch.name is not unique');
  const ports = getColumn(ls, 'ports');
  t.same(ports.type, {
    key: { type: 'uuid', refTable: 'Logical_Switch_Port', refType: 'strong' },
    min: 0,
    max: Infinity,
  });
  t.equal(ports.type.max, Infinity);
  // The schema omits refType here: the default must be filled in.
  t.equal(getColumn(ls, 'load_balancer_group').type.key.refType, 'strong');

  const global = getTable(nb, 'NB_Global');
  t.equal(global.maxRows, 1);
  t.equal(global.isRoot, true);
  t.same(getColumn(global, 'nb_cfg').type, { key: { type: 'integer' }, min: 1, max: 1 });

  t.equal(getTable(nb, 'ACL').isRoot, false);
  t.same(getColumn(getTable(nb, 'ACL'), 'direction').type.key.enum, ['from-lport', 'to-lport']);
  t.same(getTable(nb, 'Port_Group').indexes, [['name']]);
  t.same(getTable(nb, 'Address_Set').indexes, [['name']]);

  for (const table of nb.tables.values()) {
    t.same(
      [table.columns.get('_uuid'), table.columns.get('_version')],
      [
        { name: '_uuid', type: { key: { type: 'uuid' }, min: 1, max: 1 }, ephemeral: false, mutable: false },
        { name: '_version', type: { key: { type: 'uuid' }, min: 1, max: 1 }, ephemeral: false, mutable: false },
      ],
      `${table.name} has the implicit columns`,
    );
  }
});

t.test('OVN Southbound and Open_vSwitch schemas from /usr/share', async (t) => {
  const sb = load('/usr/share/ovn/ovn-sb.ovsschema');
  t.equal(sb.name, 'OVN_Southbound');
  t.equal(getTable(sb, 'SB_Global').maxRows, 1);
  t.same(getTable(sb, 'Chassis').indexes, [['name']]);
  t.same(getTable(sb, 'Port_Binding').indexes, [['datapath', 'tunnel_key'], ['logical_port']]);
  t.same(getColumn(getTable(sb, 'Port_Binding'), 'chassis').type.key, {
    type: 'uuid',
    refTable: 'Chassis',
    refType: 'weak',
  });

  const ovs = load('/usr/share/openvswitch/vswitch.ovsschema');
  t.equal(ovs.name, 'Open_vSwitch');
  const root = getTable(ovs, 'Open_vSwitch');
  t.equal(root.maxRows, 1);
  t.equal(root.isRoot, true);
  t.equal(getTable(ovs, 'Port').isRoot, false);
  t.same(getColumn(getTable(ovs, 'Bridge'), 'ports').type, {
    key: { type: 'uuid', refTable: 'Port', refType: 'strong' },
    min: 0,
    max: Infinity,
  });
  t.same(getColumn(getTable(ovs, 'Interface'), 'ofport').type, { key: { type: 'integer' }, min: 0, max: 1 });
  const ephemeral = [...getTable(ovs, 'Interface').columns.values()].filter((c) => c.ephemeral).map((c) => c.name);
  t.ok(ephemeral.includes('link_state'), 'Interface.link_state is ephemeral');
  t.equal(getColumn(getTable(ovs, 'Bridge'), 'name').mutable, false, 'Bridge.name is immutable');

  const local = load('/usr/share/openvswitch/local-config.ovsschema');
  t.equal(local.name, 'Local_Config');
});

t.test('_Server schema: no isRoot anywhere means every table is root', async (t) => {
  const s = parseSchema(SERVER_SCHEMA);
  t.equal(s.version, '1.2.0');
  t.equal(s.cksum, '3009684573 744');
  const db = getTable(s, 'Database');
  t.equal(db.isRoot, true);
  t.same(getColumn(db, 'model').type, {
    key: { type: 'string', enum: ['clustered', 'relay', 'standalone'] },
    min: 1,
    max: 1,
  });
  t.same(getColumn(db, 'cid').type, { key: { type: 'uuid' }, min: 0, max: 1 });
  t.same(db.indexes, []);
  t.equal(db.maxRows, undefined);
});

t.test('isRoot as the server says when some table is root', async (t) => {
  const s = parseSchema(base());
  t.equal(getTable(s, 'Parent').isRoot, true);
  t.equal(getTable(s, 'Kid').isRoot, false);
  const noneRoot = broken(['tables', 'Parent', 'isRoot'], false);
  t.equal(getTable(parseSchema(noneRoot), 'Kid').isRoot, true, 'all false is the same as all absent');
});

t.test('defaults and variants', async (t) => {
  const s = parseSchema({
    name: 'D',
    version: '0.0.1',
    tables: {
      T: {
        columns: {
          bare: { type: 'real' },
          obj: { type: { key: 'string' } },
          range: { type: { key: 'integer', min: 0, max: 5 } },
          capped: { type: { key: { type: 'string', minLength: 1, maxLength: 63 }, max: 'unlimited' } },
          reals: { type: { key: { type: 'real', minReal: -1.5, maxReal: 2 }, min: 0, max: 1 } },
          one: { type: { key: { type: 'integer', enum: 7 } } },
          eph: { type: 'boolean', ephemeral: true, mutable: false },
          weak: { type: { key: { type: 'uuid', refTable: 'T', refType: 'weak' }, min: 0, max: 1 }, mutable: false },
          newer: { type: 'string', someFutureMember: 1 },
        },
        indexes: [['bare', 'obj'], ['one']],
        maxRows: 3,
      },
    },
  });
  const tbl = getTable(s, 'T');
  t.same(getColumn(tbl, 'bare').type, { key: { type: 'real' }, min: 1, max: 1 });
  t.same(getColumn(tbl, 'obj').type, { key: { type: 'string' }, min: 1, max: 1 });
  t.same(getColumn(tbl, 'range').type, { key: { type: 'integer' }, min: 0, max: 5 });
  t.same(getColumn(tbl, 'capped').type, {
    key: { type: 'string', minLength: 1, maxLength: 63 },
    min: 1,
    max: Infinity,
  });
  t.same(getColumn(tbl, 'reals').type.key, { type: 'real', minReal: -1.5, maxReal: 2 });
  t.same(getColumn(tbl, 'one').type.key, { type: 'integer', enum: [7] }, 'a bare atom is a one-element enum');
  t.same(
    { ephemeral: getColumn(tbl, 'eph').ephemeral, mutable: getColumn(tbl, 'eph').mutable },
    { ephemeral: true, mutable: false },
  );
  t.equal(getColumn(tbl, 'weak').mutable, true, 'weak references are always mutable');
  t.equal(getColumn(tbl, 'obj').mutable, true);
  t.same(tbl.indexes, [['bare', 'obj'], ['one']]);
  t.equal(tbl.maxRows, 3);
  t.equal(tbl.isRoot, true);
  t.equal(getColumn(tbl, 'newer').type.key.type, 'string', 'unknown members are ignored');
});

t.test('names that collide with Object.prototype are plain names', async (t) => {
  const s = parseSchema({
    name: 'P',
    version: '1.0.0',
    tables: {
      __proto__: { columns: { constructor: { type: 'string' } } },
      constructor: { columns: { toString: { type: 'integer' }, hasOwnProperty: { type: 'boolean' } } },
    },
  } as unknown);
  // The object literal above sets the prototype; JSON.parse makes a real member.
  t.same([...s.tables.keys()], ['constructor']);
  const fromJson = parseSchema(
    JSON.parse('{"name":"P","version":"1.0.0","tables":{"__proto__":{"columns":{"constructor":{"type":"string"}}}}}'),
  );
  t.same([...fromJson.tables.keys()], ['__proto__']);
  t.equal(getColumn(getTable(fromJson, '__proto__'), 'constructor').type.key.type, 'string');
  t.same([...getTable(s, 'constructor').columns.keys()], ['_uuid', '_version', 'toString', 'hasOwnProperty']);
  t.throws(() => getTable(s, 'toString'), SchemaError);
  t.throws(() => getColumn(getTable(s, 'constructor'), 'valueOf'), CodecError);
});

t.test('getTable and getColumn errors', async (t) => {
  const s = parseSchema(base());
  t.throws(() => getTable(s, 'Nope'), { name: 'SchemaError', message: /unknown table Nope/ });
  const err = t.throws(() => getColumn(getTable(s, 'Kid'), 'nope'), { name: 'CodecError' });
  t.match(err, { message: 'Kid.nope: unknown column', context: { table: 'Kid', column: 'nope' } });
});

t.test('malformed schemas are refused with the table and column named', async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ['not an object', [], /expected a JSON object/],
    ['no name', broken(['name'], undefined), /"name"/],
    ['bad version', broken(['version'], '1.0'), /x\.y\.z/],
    ['no tables', broken(['tables'], undefined), /"tables"/],
    ['no columns', broken(['tables', 'Kid', 'columns'], {}), /table Kid: .*at least one column/],
    ['columns missing', broken(['tables', 'Kid', 'columns'], undefined), /table Kid/],
    ['unknown atomic type', broken(['tables', 'Kid', 'columns', 'n', 'type'], 'int'), /Kid\.n: unknown atomic type "int"/],
    [
      'unknown atomic type in value',
      broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: 'string', value: 'text' }),
      /Kid\.n value: unknown atomic type "text"/,
    ],
    ['type missing', broken(['tables', 'Kid', 'columns', 'n'], {}), /Kid\.n: "type" is missing/],
    ['key missing', broken(['tables', 'Kid', 'columns', 'n', 'type'], { min: 0 }), /Kid\.n: type has no "key"/],
    ['min 2', broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: 'string', min: 2, max: 3 }), /Kid\.n: "min"/],
    ['min -1', broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: 'string', min: -1 }), /Kid\.n: "min"/],
    ['min as string', broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: 'string', min: '0' }), /Kid\.n: "min"/],
    ['max 0', broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: 'string', min: 0, max: 0 }), /Kid\.n: "max"/],
    ['max 1.5', broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: 'string', max: 1.5 }), /Kid\.n: "max"/],
    ['max word', broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: 'string', max: 'many' }), /Kid\.n: "max"/],
    [
      'refTable to a missing table',
      broken(['tables', 'Parent', 'columns', 'kids', 'type', 'key', 'refTable'], 'Orphan'),
      /Parent\.kids: refTable "Orphan"/,
    ],
    [
      'refType without refTable',
      broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: { type: 'uuid', refType: 'weak' } }),
      /Kid\.n key: "refType" without "refTable"/,
    ],
    [
      'bad refType',
      broken(['tables', 'Parent', 'columns', 'kids', 'type', 'key', 'refType'], 'soft'),
      /Parent\.kids key: "refType"/,
    ],
    [
      'refTable on a string',
      broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: { type: 'string', refTable: 'Kid' } }),
      /Kid\.n key: "refTable" is not allowed for type string/,
    ],
    [
      'minInteger > maxInteger',
      broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: { type: 'integer', minInteger: 5, maxInteger: 4 } }),
      /Kid\.n key: "minInteger" 5 exceeds "maxInteger" 4/,
    ],
    [
      'minLength negative',
      broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: { type: 'string', minLength: -1 } }),
      /Kid\.n key: invalid "minLength"/,
    ],
    [
      'enum of the wrong type',
      broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: { type: 'integer', enum: ['set', ['a']] } }),
      /Kid\.n key: "enum" value "a" is not a integer/,
    ],
    [
      'empty enum',
      broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: { type: 'string', enum: ['set', []] } }),
      /Kid\.n key: "enum" must not be empty/,
    ],
    [
      'duplicate enum',
      broken(['tables', 'Kid', 'columns', 'n', 'type'], { key: { type: 'string', enum: ['set', ['a', 'a']] } }),
      /Kid\.n key: "enum" contains "a" twice/,
    ],
    ['reserved column name', broken(['tables', 'Kid', 'columns', '_uuid'], { type: 'uuid' }), /Kid\._uuid: invalid column name/],
    ['non-identifier column', broken(['tables', 'Kid', 'columns', 'a-b'], { type: 'uuid' }), /Kid\.a-b: invalid column name/],
    ['bad ephemeral', broken(['tables', 'Kid', 'columns', 'n', 'ephemeral'], 'yes'), /Kid\.n: "ephemeral"/],
    ['bad mutable', broken(['tables', 'Kid', 'columns', 'n', 'mutable'], 0), /Kid\.n: "mutable"/],
    ['bad isRoot', broken(['tables', 'Kid', 'isRoot'], 'true'), /table Kid: "isRoot"/],
    ['maxRows 0', broken(['tables', 'Kid', 'maxRows'], 0), /table Kid: "maxRows"/],
    ['index on unknown column', broken(['tables', 'Kid', 'indexes'], [['m']]), /table Kid: index \["m"\]/],
    ['empty index', broken(['tables', 'Kid', 'indexes'], [[]]), /table Kid: each index/],
    ['bad table name', broken(['tables', 'a b'], { columns: { x: { type: 'string' } } }), /table name "a b"/],
  ];
  for (const [what, json, message] of cases) {
    t.throws(() => parseSchema(json), { name: 'SchemaError', message }, what);
  }
});
