-- Run once by the mysql image at its first start (docker-entrypoint-initdb.d).
-- The tor user gets what tor needs and no more: the binlog (REPLICATION
-- SLAVE), the server's binlog state (REPLICATION CLIENT) and SELECT on the
-- outbox schema (column names from information_schema when a table map
-- carries none).  The password is the demo's (compose.yaml, tor's
-- TOR_MYSQL_PASSWORD); change both together.

CREATE DATABASE IF NOT EXISTS shop;

CREATE TABLE shop.outbox (
  id             BIGINT AUTO_INCREMENT PRIMARY KEY,
  uuid           CHAR(36)     NOT NULL,
  aggregate_id   VARCHAR(64)  NOT NULL,
  aggregate_type VARCHAR(64)  NOT NULL,
  payload        BLOB,
  created_at     TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
);

CREATE USER 'tor'@'%' IDENTIFIED BY 'tor-demo-password';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'tor'@'%';
GRANT SELECT ON shop.* TO 'tor'@'%';
