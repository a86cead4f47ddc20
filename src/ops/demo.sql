-- The demo workspace: a small shop with the things real applications have (schemas,
-- enums, identity columns, jsonb, bytea, arrays, a trigger, a materialized view).
SELECT setseed(0.42);
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA shop;
COMMENT ON SCHEMA shop IS 'The demo shop''s tables';
CREATE TYPE shop.order_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled');

CREATE TABLE shop.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    profile jsonb
);
CREATE TABLE shop.products (
    id serial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    title text NOT NULL,
    price numeric(12,2) NOT NULL CHECK (price >= 0),
    tags text[],
    thumbnail bytea
);
CREATE TABLE shop.orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers (id),
    status shop.order_status NOT NULL DEFAULT 'pending',
    placed_at timestamptz NOT NULL,
    total numeric(12,2) NOT NULL DEFAULT 0
);
CREATE TABLE shop.order_items (
    order_id bigint NOT NULL REFERENCES shop.orders (id) ON DELETE CASCADE,
    product_id integer NOT NULL REFERENCES shop.products (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(12,2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE shop.order_audit (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL,
    action text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE shop.events (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL
);
CREATE INDEX orders_customer ON shop.orders (customer_id);
CREATE INDEX events_payload ON shop.events USING gin (payload);

CREATE FUNCTION shop.audit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO shop.order_audit (order_id, action) VALUES (NEW.id, TG_OP);
    RETURN NEW;
END $$;
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION shop.audit_order();

INSERT INTO shop.customers (email, name, created_at, profile)
SELECT 'customer' || i || '@example.com', 'Customer ' || i,
       timestamptz '2025-01-01 00:00:00+00' + i * interval '37 minutes',
       jsonb_build_object('tier', (ARRAY['free','pro','team'])[1 + i % 3], 'newsletter', i % 2 = 0)
FROM generate_series(1, 5000) AS i;

INSERT INTO shop.products (sku, title, price, tags, thumbnail)
SELECT 'SKU-' || lpad(i::text, 5, '0'), 'Product ' || i, round((random() * 200)::numeric, 2),
       ARRAY['tag' || i % 7, 'tag' || i % 11],
       CASE WHEN i % 5 = 0 THEN NULL ELSE decode(md5(i::text) || md5((i * 7)::text), 'hex') END
FROM generate_series(1, 500) AS i;

INSERT INTO shop.orders (customer_id, status, placed_at)
SELECT 1 + (random() * 4999)::int,
       (ARRAY['pending','paid','shipped','cancelled']::shop.order_status[])[1 + (random() * 3)::int],
       timestamptz '2025-06-01 00:00:00+00' + i * interval '9 minutes'
FROM generate_series(1, 30000) AS i;

INSERT INTO shop.order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, p.id, 1 + (random() * 4)::int, p.price
FROM shop.orders o
CROSS JOIN LATERAL (SELECT DISTINCT 1 + ((o.id * k * 7919) % 500)::int AS id FROM generate_series(1, 3) AS k) AS pick
JOIN shop.products p ON p.id = pick.id;

UPDATE shop.orders o SET total = s.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total FROM shop.order_items GROUP BY order_id) s
WHERE s.order_id = o.id;

INSERT INTO shop.events (at, kind, payload)
SELECT timestamptz '2025-06-01 00:00:00+00' + i * interval '1 minute',
       (ARRAY['page_view','add_to_cart','checkout','login'])[1 + i % 4],
       jsonb_build_object('session', md5(i::text), 'path', '/p/' || (i % 500), 'ms', (random() * 900)::int)
FROM generate_series(1, 40000) AS i;

CREATE MATERIALIZED VIEW shop.daily_sales AS
SELECT date_trunc('day', placed_at) AS day, count(*) AS orders, sum(total) AS revenue
FROM shop.orders WHERE status <> 'cancelled' GROUP BY 1;
