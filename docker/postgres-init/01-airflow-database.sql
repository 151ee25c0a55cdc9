-- POSTGRES_DB creates the results database (kubexp); Airflow's metadata gets its own database.
CREATE DATABASE airflow;
