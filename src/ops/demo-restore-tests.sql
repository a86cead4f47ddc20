-- The demo shop's own restore tests: what the business needs of a restored copy.

-- assert: customers and orders were restored
SELECT (SELECT count(*) FROM shop.customers) > 0 AND (SELECT count(*) FROM shop.orders) > 0;

-- assert-empty: every order total is the sum of its lines
SELECT o.id, o.total, sum(i.quantity * i.unit_price) AS lines
  FROM shop.orders o JOIN shop.order_items i ON i.order_id = o.id
 GROUP BY o.id, o.total
HAVING o.total <> sum(i.quantity * i.unit_price);

-- assert: the checkout endpoint is published
SELECT EXISTS (SELECT 1 FROM tidemark.stacks s JOIN tidemark.stack_versions v ON v.stack_id = s.id
                WHERE s.kind = 'api' AND s.name = 'checkout');
