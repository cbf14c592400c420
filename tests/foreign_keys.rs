//! End-to-end tests of foreign keys across slice servers: a referencing row
//! and the deletion of the row it references, in concurrent transactions,
//! never leave an orphan whichever comes first (the second waits for the
//! first: with a `lock_timeout` it gives up with 55P03); concurrent
//! references to one row wait for each other rather than fail.

use slicedb_e2e::{query as rows, TestCluster};

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("{e}"))
}

/// A cluster of three slice servers with 20 customers and a table of
/// orders that references them (with `action`).
async fn customers_and_orders(action: &str) -> (TestCluster, tokio_postgres::Client) {
    let cluster = TestCluster::start(3, 0);
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE customers (id int PRIMARY KEY, name text);
             CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers {action});
             INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 20) AS s(g);"
        ))
        .await
        .unwrap();
    (cluster, client)
}

/// `sql` (with `$1` = `id`) must wait for a row lock another transaction
/// holds: with a `lock_timeout` it gives up with 55P03.
async fn gives_up_waiting(client: &tokio_postgres::Client, sql: &str, id: i32) {
    client.batch_execute("SET lock_timeout = '300ms'").await.unwrap();
    let err = client.execute(sql, &[&id]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "55P03", "{sql}: {err:?}");
    client.batch_execute("SET lock_timeout = 0").await.unwrap();
}

async fn orphans(client: &tokio_postgres::Client) -> String {
    rows(
        client,
        "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id)",
    )
    .await[0][0]
        .clone()
}

/// A transaction inserts an order for customer 1 and stays open; another
/// session deletes customer 1 meanwhile. Whenever the delete runs, it must
/// fail once the order commits (it waits for the order's lock on the
/// customer row), and no order is left without its customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_waits_for_a_referencing_insert_and_then_fails() {
    let (cluster, client) = customers_and_orders("").await;
    for level in ["READ COMMITTED", "REPEATABLE READ"] {
        let id: i32 = if level == "READ COMMITTED" { 1 } else { 2 };
        let writer = cluster.client().await;
        writer
            .batch_execute(&format!("BEGIN ISOLATION LEVEL {level}"))
            .await
            .unwrap();
        writer
            .execute("INSERT INTO orders VALUES ($1, $1)", &[&id])
            .await
            .unwrap();
        // The order's lock on the customer row keeps the delete out
        // while the order's transaction is open.
        let deleter = cluster.client().await;
        gives_up_waiting(&deleter, "DELETE FROM customers WHERE id = $1", id).await;
        let delete = tokio::spawn(async move {
            deleter
                .execute("DELETE FROM customers WHERE id = $1", &[&id])
                .await
                .map_err(|e| sqlstate(&e))
        });
        writer.batch_execute("COMMIT").await.unwrap();
        let deleted = tokio::time::timeout(std::time::Duration::from_secs(60), delete)
            .await
            .expect("the delete ended")
            .unwrap();
        assert_eq!(deleted, Err("23503".to_string()), "{level}");
        assert_eq!(orphans(&client).await, "0", "{level}");
    }
}

/// The other order: a transaction deletes customer 3 and stays open; an
/// insert of an order for it waits for that transaction, and fails once
/// the delete commits. A rolled-back delete lets it through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referencing_insert_waits_for_a_delete_and_then_fails() {
    let (cluster, client) = customers_and_orders("").await;
    for (id, end) in [(3, "COMMIT"), (4, "ROLLBACK")] {
        let deleter = cluster.client().await;
        deleter.batch_execute("BEGIN").await.unwrap();
        deleter
            .execute("DELETE FROM customers WHERE id = $1", &[&id])
            .await
            .unwrap();
        // The delete's lock keeps the referencing insert out while the
        // delete's transaction is open.
        let writer = cluster.client().await;
        gives_up_waiting(&writer, "INSERT INTO orders VALUES ($1, $1)", id).await;
        let insert = tokio::spawn(async move {
            writer
                .execute("INSERT INTO orders VALUES ($1, $1)", &[&id])
                .await
                .map_err(|e| sqlstate(&e))
        });
        deleter.batch_execute(end).await.unwrap();
        let inserted = tokio::time::timeout(std::time::Duration::from_secs(60), insert)
            .await
            .expect("the insert ended")
            .unwrap();
        match end {
            "COMMIT" => assert_eq!(inserted, Err("23503".to_string())),
            _ => assert_eq!(inserted, Ok(1)),
        }
        assert_eq!(orphans(&client).await, "0");
    }
}

/// Eight sessions insert orders for the same five customers at
/// REPEATABLE READ, and a ninth deletes customers 6 to 20 one by one while
/// they run: every order insert succeeds (references to one row wait for
/// each other, they do not conflict), and no order references a deleted
/// customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_references_to_one_row_all_succeed() {
    let (cluster, client) = customers_and_orders("ON DELETE CASCADE").await;
    let mut tasks = Vec::new();
    for s in 0..8i32 {
        let c = cluster.client().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..20i32 {
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
                let id = s * 1000 + i;
                let customer = 1 + (i % 5);
                c.execute("INSERT INTO orders VALUES ($1, $2)", &[&id, &customer])
                    .await
                    .unwrap();
                c.batch_execute("COMMIT").await.unwrap();
            }
        }));
    }
    let c = cluster.client().await;
    let deletes = tokio::spawn(async move {
        for id in 6..=20i32 {
            c.execute("DELETE FROM customers WHERE id = $1", &[&id]).await.unwrap();
        }
    });
    for t in tasks {
        t.await.unwrap();
    }
    deletes.await.unwrap();
    assert_eq!(rows(&client, "SELECT count(*) FROM orders").await[0][0], "160");
    assert_eq!(rows(&client, "SELECT count(*) FROM customers").await[0][0], "5");
    assert_eq!(orphans(&client).await, "0");
}
